# One path per watch block.
# want: 3:12 Extraneous label for watch
watch "/a" "/b" {}
