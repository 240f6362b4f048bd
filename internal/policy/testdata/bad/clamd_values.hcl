# (the clamd engine itself is accepted)
# want: 5:13 Invalid address | unix://
# want: 6:13 Invalid timeout | positive duration
engine "clamd" {
  address = "localhost:3310"
  timeout = "-1s"
}
watch "/srv" {}
