# gitmesh on Nomad: the reconciler as a service, and one app (reviews v1)
# with its sidecar in the same group (shared network namespace).
# `nomad job run gitmesh.nomad.hcl`

job "gitmesh" {
  datacenters = ["dc1"]
  type        = "service"

  group "reconciler" {
    count = 1

    network {
      port "api" { static = 15010 }
    }

    # The mirror of the policy repo; the status branch in Git is the real
    # state, so losing this volume only costs a fresh clone.
    ephemeral_disk {
      sticky  = true
      migrate = true
      size    = 500
    }

    task "reconcile" {
      driver = "exec"

      config {
        command = "/usr/local/bin/gitmesh"
        args = [
          "reconcile",
          "--remote", "https://git.example.com/platform/mesh-policy.git",
          "--data-dir", "${NOMAD_ALLOC_DIR}/data",
          "--poll", "30s",
          "--listen", "0.0.0.0:${NOMAD_PORT_api}",
          "--webhook-secret-file", "${NOMAD_SECRETS_DIR}/webhook-secret",
        ]
      }

      template {
        destination = "${NOMAD_SECRETS_DIR}/webhook-secret"
        perms       = "0600"
        data        = "{{ with nomadVar \"nomad/jobs/gitmesh\" }}{{ .webhook_secret }}{{ end }}"
      }

      service {
        name     = "gitmesh-reconciler"
        port     = "api"
        provider = "nomad"
        check {
          type     = "http"
          path     = "/v1/status"
          interval = "10s"
          timeout  = "2s"
        }
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }

  group "reviews-v1" {
    count = 2

    network {
      mode = "bridge"
      port "inbound" { to = 15006 }
    }

    task "app" {
      driver = "docker"
      config {
        image = "example/reviews:1.0"
        # The app listens on 127.0.0.1:9080 and calls other services
        # through its sidecar.
        env = { HTTP_PROXY = "http://127.0.0.1:15001" }
      }
    }

    task "sidecar" {
      driver = "exec"
      lifecycle {
        hook    = "prestart"
        sidecar = true
      }
      config {
        command = "/usr/local/bin/gitmesh"
        args = [
          "proxy",
          "--control-plane", "http://gitmesh-reconciler.service.internal:15010",
          "--service", "reviews",
          "--label", "version=v1",
          "--app", "127.0.0.1:9080",
          "--outbound", "127.0.0.1:15001",
          "--inbound", "0.0.0.0:15006",
          # What peers dial: the host's address and the mapped port.
          "--address", "${NOMAD_HOST_ADDR_inbound}",
          "--admin", "127.0.0.1:15000",
          "--state-dir", "${NOMAD_ALLOC_DIR}/gitmesh",
        ]
      }
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"
      resources {
        cpu    = 100
        memory = 32
      }
    }
  }
}
