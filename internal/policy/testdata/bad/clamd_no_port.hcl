# want: 4:13 Invalid address | missing port
engine "clamd" {
  # tcp needs a port: clamd's 3310 is a convention, not a default vigil assumes.
  address = "tcp://127.0.0.1"
}
watch "/srv" {}
