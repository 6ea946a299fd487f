"""Shared helpers for the Python-client end-to-end scripts.

Each script takes the kubeconfig path as its only argument, talks to the
server with the official `kubernetes` client, and exits non-zero (via an
uncaught exception) on the first failed expectation.
"""

import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException


def connect():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} <kubeconfig>")
    config.load_kube_config(config_file=sys.argv[1])
    return client.ApiClient()


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}")


def expect_api_error(fn, status, reason=None):
    """Call fn(); it must raise ApiException with `status` (and Status.reason)."""
    try:
        fn()
    except ApiException as e:
        import json

        body = {}
        try:
            body = json.loads(e.body or "{}")
        except ValueError:
            pass
        if e.status != status:
            raise AssertionError(f"expected HTTP {status}, got {e.status}: {e.body}")
        if reason is not None and body.get("reason") != reason:
            raise AssertionError(f"expected reason {reason}, got {body.get('reason')}: {e.body}")
        print(f"ok: HTTP {status} {body.get('reason')}: {body.get('message')}")
        return body
    raise AssertionError(f"expected HTTP {status}, the call succeeded")


def namespace(api_client, name):
    v1 = client.CoreV1Api(api_client)
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name
