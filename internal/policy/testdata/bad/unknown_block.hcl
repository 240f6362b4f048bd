# want: 2:1 Unsupported block type
watches "/srv" {}
watch "/srv" {}
