# want: 7:20 Invalid metrics_listen | Got host "0.0.0.0"; metrics listen on a loopback address only
settings {
  # Anything but loopback would expose vigil's metrics to the network.
  # 0.0.0.0 is refused, and so is a public address.
  workers = 2

  metrics_listen = "0.0.0.0:9464"
}
watch "/srv" {}
