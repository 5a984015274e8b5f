"""The shipped image, built with podman and run against the real kube-apiserver (issue 9)."""
