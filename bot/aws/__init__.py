"""AWS parts, one module per service: S3 artifacts, EC2 host discovery, CloudWatch alarm gates, Secrets Manager
values for shared/.env, ECS services (ecs.py). boto3 is imported inside the functions that call AWS, never
when a module loads, so the CLI's --help, status and history of an environment without AWS never pay for it."""
