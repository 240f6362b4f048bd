# want: 5:13 Invalid address | socket path is not absolute
engine "clamd" {
  # The host part of a URL: this is the relative path run/clamd.ctl,
  # not /run/clamd.ctl. An absolute path takes three slashes.
  address = "unix://run/clamd.ctl"
}
watch "/srv" {}
