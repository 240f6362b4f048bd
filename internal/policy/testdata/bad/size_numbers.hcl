# A size may be a number of bytes: a positive whole one.
# want: 9:19 Invalid max_file_size | Got 1.5; a size in bytes must be a positive whole number
# want: 12:19 Invalid max_file_size | Got -1; a size in bytes must be a positive whole number
# want: 15:19 Invalid max_file_size | Got 0; a size in bytes must be a positive whole number
# want: 18:19 Invalid max_file_size | Got 1e+30; the size is too large
# want: 21:19 Invalid max_file_size | A number or string is required, got bool
settings {
  # Fractions of a byte mean a unit was meant: "1.5MiB" is refused too.
  max_file_size = 1.5
}
watch "/a" {
  max_file_size = -1
}
watch "/b" {
  max_file_size = 0
}
watch "/c" {
  max_file_size = 1e30
}
watch "/d" {
  max_file_size = true
}
