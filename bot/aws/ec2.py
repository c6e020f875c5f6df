"""Hosts found by EC2 tags (`hosts: {ec2: {tags: {App: shop, Env: prod}}}`): the running instances carrying every
tag, as the usual Host list. Read when a deployment is planned and for status, so a fleet that scaled since the
last deploy is deployed as it is now. A stopped, stopping or pending instance is left out."""

from __future__ import annotations

from bot.aws.config import AWSSettings, EC2Hosts
from bot.aws.session import asking, client
from bot.host import NAME, Host


def discover(settings: AWSSettings, spec: EC2Hosts) -> list[Host]:
    """The running instances with all of spec.tags, named by instance id (or Name tag), sorted by name."""
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in spec.tags.items()]
    filters.append({"Name": "instance-state-name", "Values": ["running"]})
    instances = []
    with asking(f"listing the EC2 instances tagged {spec.describe()}"):
        for page in client("ec2", settings).get_paginator("describe_instances").paginate(Filters=filters):
            instances += [i for r in page.get("Reservations", []) for i in r.get("Instances", [])]
    names = _names(spec, instances)
    hosts = []
    for inst in instances:
        iid = inst["InstanceId"]
        address = inst.get("PrivateIpAddress") if spec.address == "private" else inst.get("PublicIpAddress")
        if not address:
            continue  # no address of that kind (e.g. no public IP): it cannot be reached that way
        found = {
            "instance_id": iid,
            "private_ip": inst.get("PrivateIpAddress"),
            "public_ip": inst.get("PublicIpAddress"),
            "availability_zone": (inst.get("Placement") or {}).get("AvailabilityZone"),
        }
        hosts.append(
            Host(
                name=names[iid],
                address=address,
                user=spec.user,
                port=spec.port,
                vars={k: v for k, v in found.items() if v},
            )
        )
    return sorted(hosts, key=lambda h: h.name)


def _names(spec: EC2Hosts, instances: list[dict]) -> dict[str, str]:
    """Instance id, or the Name tag where asked for and it is a valid host name no other instance carries."""
    ids = {i["InstanceId"]: i["InstanceId"] for i in instances}
    if spec.name != "Name":
        return ids
    tagged = {
        i["InstanceId"]: next((t["Value"] for t in i.get("Tags", []) if t.get("Key") == "Name"), "") for i in instances
    }
    counts: dict[str, int] = {}
    for name in tagged.values():
        counts[name] = counts.get(name, 0) + 1
    return {
        iid: name if name and NAME.match(name) and counts[name] == 1 and name not in ids else iid
        for iid, name in tagged.items()
    }
