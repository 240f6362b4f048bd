# want: 4:20 Quarantine directory inside a watch | covered by the watch at
# (vigil would scan and quarantine its own store)
settings {
  quarantine_dir = "/srv/uploads/.quarantine"
}
watch "/srv/uploads" {
  action = "quarantine"
}
