# want: 3:7 Quarantine directory inside a watch | "/var/lib/vigil/quarantine" is covered
# the default quarantine_dir is inside this watch
watch "/var" {
  action = "quarantine"
}
