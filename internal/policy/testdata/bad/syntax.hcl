# want: 4:1 Argument or block definition required
watch "/srv" {
}
}
