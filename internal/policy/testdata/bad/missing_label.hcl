# want: 3:7 Missing path for watch
watch "/srv" {}
watch {}
