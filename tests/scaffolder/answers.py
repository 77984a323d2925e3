"""Bad answers to the template's questions, each with the words its refusal must contain.

Shared by the command-line and the terminal tests. The defaults they are judged against:
cpu_request 1, memory_request 512Mi, min_replicas 2.
"""

from __future__ import annotations

BAD_ANSWERS = [
    ("team", "Payments", "not a Kubernetes DNS-1123 label"),
    ("team", "-payments", "not a Kubernetes DNS-1123 label"),
    ("team", "p" * 64, "at most 63"),
    ("service_name", "Fraud_Score", "not a Kubernetes DNS-1123 label"),
    ("service_name", "1fraud", "must start with a letter"),
    ("service_name", "json", "shadows 'json' of the standard library"),
    ("service_name", "test", "shadows 'test'"),
    ("service_name", "gunicorn", "shadows 'gunicorn', which every service installs"),
    ("service_name", "scipy", "shadows 'scipy'"),
    ("service_name", "pytest", "shadows 'pytest'"),
    ("service_name", "chart", "inside the service's chart/"),
    ("model_id", "Fraud Score", "not a Kubernetes DNS-1123 label"),
    ("owner_email", "payments-team", "not an e-mail address"),
    ("oncall_channel", "#payments on call", "no spaces"),
    ("repository_url", "git@github.com:acme/fraud-score.git", "not a web address"),
    ("repository_url", "https://github.com/acme/fraud-score.git", "without '.git'"),
    ("repository_url", "https://github.com/acme", "HOST/ORG/NAME"),
    ("framework", "pytorch", "not one of sklearn, xgboost, lightgbm, onnx, custom"),
    ("task", "ranking", "not one of binary, multiclass, regression"),
    ("cpu_request", "lots", "does not start with a number"),
    ("cpu_request", "0", "must be more than zero"),
    ("cpu_request", "0.5m", "finer than 1m"),
    ("cpu_limit", "500m", "less than cpu_request (1)"),
    ("memory_request", "512MB", "unknown unit 'MB'"),
    ("memory_request", "32Mi", "less than 64Mi"),
    ("memory_limit", "256Mi", "less than memory_request (512Mi)"),
    ("min_replicas", "0", "must be between 1 and 1000"),
    ("min_replicas", "two", "is not a whole number"),
    ("max_replicas", "1", "less than min_replicas (2)"),
    ("autoscaling_cpu_target", "101", "must be between 1 and 100"),
    ("workers", "0", "must be between 1 and 64"),
    ("latency_slo_p99_ms", "-5", "must be between 1 and 60000"),
    ("request_timeout_ms", "50", "below latency_slo_p99_ms (100)"),
    ("availability_slo", "100", "strictly between 0 and 100"),
    ("availability_slo", "high", "is not a number"),
    ("namespace", "Team_NS", "not a Kubernetes DNS-1123 label"),
    ("registry", "https://registry.example.com/ml", "not a container registry path"),
    ("package_index_url", "ftp://pypi.example.com/simple", "not an http(s) URL"),
]
