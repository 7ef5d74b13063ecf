// Package deploy holds fleetd's deployment artifacts: the Kubernetes
// manifests, the systemd unit and the PrometheusRule generator. It has no
// code of its own; its tests hold the Dockerfile, the manifests and the unit
// to what the code and the Makefile actually do.
package deploy
