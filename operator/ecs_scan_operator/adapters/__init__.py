"""Adapters: one per outside system (ECS, ECR, Inspector, S3, local files, Jira), behind the ports."""
