# want: 5:12 action "quarantine" is not supported yet
# want: 8:10 mode "filesystem" is not supported yet
# want: 10:8 clamd engine is not supported yet
watch "/srv" {
  action = "quarantine"
}
watch "/home" {
  mode = "filesystem"
}
engine "clamd" {
  address = "unix:///run/clamav/clamd.ctl"
  timeout = "10s"
}
