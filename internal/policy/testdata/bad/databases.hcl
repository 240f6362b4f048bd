# want: 3:31 Invalid databases | absolute path
engine "builtin" {
  databases = ["/var/lib/db", "db"]
  address   = "unix:///x"
}
watch "/srv" {}
# want: 4:3 Unsupported argument
