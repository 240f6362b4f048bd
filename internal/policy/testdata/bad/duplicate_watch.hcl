# want: 4:7 Duplicate watch | duplicate_watch.hcl:2,7
watch "/srv" {}
watch "/var/www" {}
watch "/srv/" {}
