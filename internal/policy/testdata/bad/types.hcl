# want: 5:13 Invalid workers | number is required, got string
# want: 8:15 Invalid recursive | bool is required
# want: 9:15 Invalid on | list of strings
settings {
  workers = "x"
}
watch "/srv" {
  recursive = "yes"
  on        = "open"
}
