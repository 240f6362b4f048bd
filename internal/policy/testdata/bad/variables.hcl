# want: 3:13 Variables not allowed
settings {
  workers = var.workers
}
watch "/srv" {}
