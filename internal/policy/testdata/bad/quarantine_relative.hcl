# want: 3:20 Invalid quarantine_dir | absolute path
settings {
  quarantine_dir = "var/quarantine"
}
watch "/srv" {
  action = "quarantine"
}
