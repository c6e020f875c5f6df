"""Where commands run: a host over SSH (Fabric), this machine (local), or an ECS service (ecs, through boto3)."""
