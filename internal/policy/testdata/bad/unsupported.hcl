# want: 4:12 action "quarantine" is not supported yet
# want: 6:8 clamd engine is not supported yet
watch "/srv" {
  action = "quarantine"
}
engine "clamd" {
  address = "unix:///run/clamav/clamd.ctl"
  timeout = "10s"
}
