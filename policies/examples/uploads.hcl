# An upload area fed by SFTP and a web application. Scans must not slow
# down the nightly backup, so its user and its program are excluded.

watch "/srv/uploads" {
  on_error      = "deny"     # an upload that cannot be scanned is not served
  max_file_size = "512MiB"   # uploads can be big archives
  exclude       = ["*.part", ".tmp/"]
}

exclude {
  uids     = [997]                # the backup user
  programs = ["/usr/sbin/rsync"]  # and rsync, whoever runs it
}
