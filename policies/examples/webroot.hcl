# A web server: block infected files anywhere under the web root, but only
# raise alerts in the logs subtree, where blocking would stop the server
# from writing its own logs.

engine "builtin" {
  databases = ["/var/lib/clamav"]
}

watch "/var/www" {
  action  = "block"
  exclude = ["*.part", "cache/**"] # "cache/**" is anchored: only /var/www/cache
}

# The longest matching watch decides, so files below /var/www/logs follow
# this block and not the one above.
watch "/var/www/logs" {
  action = "alert"
}
