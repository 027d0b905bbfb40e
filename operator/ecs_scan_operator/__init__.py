"""ecs-scan-operator: scan the images that Amazon ECS task definitions use, report to S3, ticket in Jira."""

__version__ = "0.1.0"
