# want: 5:20 Invalid uids | from 0 to 4294967295
# want: 6:26 Invalid programs | absolute path
watch "/srv" {}
exclude {
  uids     = [997, -1, 1.5]
  programs = ["/bin/ok", "rsync"]
  users    = ["backup"]
}
# want: 5:24 Invalid uids | whole number
# want: 7:3 Unsupported argument
