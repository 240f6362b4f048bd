# The only watch lacks its path: that is the error, and no "No watch block"
# at 1:1 comes with it.
# want: 4:7 Missing path for watch
watch {}
