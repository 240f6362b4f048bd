# want: 4:12 action "quarantine" is not supported yet
# (the clamd engine is supported)
watch "/srv" {
  action = "quarantine"
}
engine "clamd" {
  address = "unix:///run/clamav/clamd.ctl"
  timeout = "10s"
}
