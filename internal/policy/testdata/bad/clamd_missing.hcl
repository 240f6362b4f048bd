# want: 3:16 Missing required argument
# want: 3:8 clamd engine is not supported yet
engine "clamd" {}
watch "/srv" {}
