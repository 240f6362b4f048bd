# want: 1:1 No watch block
settings {
  workers = 2
}
