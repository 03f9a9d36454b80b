module floe.dev/s3-latency-proxy

go 1.22
