# want: 2:8 Invalid engine | "builtin", "clamd"
engine "yara" {}
watch "/srv" {}
