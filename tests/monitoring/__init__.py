"""The monitoring deployment files (deploy/prometheus, deploy/alertmanager, deploy/grafana):
promtool checks and unit tests of the alert rules, every metric they name against a live
scrape, and an alert seen firing in a real Prometheus."""
