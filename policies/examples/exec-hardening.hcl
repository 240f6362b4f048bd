# Exec-only hardening: applications under /opt/apps are scanned when they
# are executed, not when they are read, so data-heavy apps pay nothing for
# ordinary file reads.

settings {
  workers  = 2
  on_error = "deny" # never run a binary vigil could not check
}

watch "/opt/apps" {
  on = ["exec"]
}

# Only the plugin directory itself, not its subdirectories: plugins are
# single files dropped in here.
watch "/opt/apps/plugins" {
  on        = ["open", "exec"]
  recursive = false
}
