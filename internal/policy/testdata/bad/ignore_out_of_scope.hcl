# want: 5:25 Invalid ignore_out_of_scope | bool is required, got string
settings {
  # A boolean, not a string: "yes" would read as a mistake waiting to
  # happen once "no" is written too.
  ignore_out_of_scope = "yes"
}
watch "/srv" {
  mode = "filesystem"
}
