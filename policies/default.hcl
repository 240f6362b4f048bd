# vigil default policy: /etc/vigil/policy.hcl
#
# vigil scans files in the trees below when a process opens or executes
# them, and denies access to infected ones. This file is safe to start
# with on any server: it watches only places where files arrive from
# outside (uploads, web roots, home directories), never /, /proc, /sys,
# /dev or /usr. Edit it, then check it with:
#
#     vigil policy check /etc/vigil/policy.hcl
#
# and reload the daemon with `systemctl reload vigil` (SIGHUP). A broken
# policy is reported and the old one stays in force.
#
# A watch on a directory that does not exist yet only logs a warning; the
# watch is placed as soon as the directory appears.

# The scan engine. "builtin" reads ClamAV signature databases (files or
# directories of .cvd/.cld/.hdb/.hsb/.ndb/...); keep them fresh with
# freshclam. EICAR is always detected, even with no database at all.
engine "builtin" {
  databases = ["/var/lib/clamav", "/var/lib/vigil/db"]
}

# Daemon-wide knobs; the values below are the defaults.
settings {
  workers        = 4         # files scanned in parallel
  scan_timeout   = "5s"      # how long an open may wait for a verdict
  max_file_size  = "100MiB"  # larger files are not scanned (and are logged)

  # The verdict when a file cannot be scanned in time (engine error,
  # timeout, queue full). "allow" keeps the server running if vigil is
  # overloaded; "deny" is stricter but can stall applications.
  on_error = "allow"

  control_socket = "/run/vigil/vigil.sock"       # for `vigil status`
  alert_log      = "/var/log/vigil/alerts.jsonl" # one JSON line per detection
}

# Each watch covers a directory and everything below it. Defaults:
#   action    = "block"           # block: deny access | alert: log only |
#                                 # quarantine: deny, then move to quarantine_dir
#   recursive = true
#   on        = ["open", "exec"]  # open | exec | access (access is costly)
# Excludes are globs relative to the watch root, gitignore-style: a name
# without "/" matches at any depth, "**" spans directories, and excluding
# a directory excludes everything in it.

# Site data and FTP/SFTP drop areas.
watch "/srv" {
  exclude = ["*.part", "*.tmp"] # transfers in progress, scanned once complete
}

# Web roots: uploaded files are served and often executed from here.
watch "/var/www" {
  exclude = ["*.part", "cache"]
}

# Users' files. Tool caches churn a lot and rarely carry payloads.
watch "/home" {
  exclude = [".cache", "*.part"]
}

watch "/var/ftp" {}

# Processes whose accesses are never scanned, e.g. the backup agent, which
# reads everything and would otherwise pay for a scan of each file.
# exclude {
#   uids     = [997]
#   programs = ["/usr/bin/restic"]
# }
