# want: 3:3 Unsupported argument
settings {
  wrokers = 4
}
watch "/srv" {}
