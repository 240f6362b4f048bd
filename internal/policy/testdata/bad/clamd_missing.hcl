# want: 3:16 Missing required argument
# (the clamd engine itself is accepted)
engine "clamd" {}
watch "/srv" {}
