# want: 2:7 Relative watch path
watch "srv/uploads" {}
