"""Drives a binder with python-consul (Debian's python3-consul 0.7.1), as
a team that already uses it would: register (with a TTL check and
without), read health, block on an index until a change.

python-consul 0.7.1 predates Consul 1.0 and sends GET for deregistration
and TTL updates, which Consul 1.0 and later refuse with 405, as lieur
does: the script checks that refusal too.

Usage: consul_client.py HOST PORT SERVICE
Prints one line per step; exits non-zero on the first surprise.
"""
import sys
import threading
import time

import consul

host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = consul.Consul(host=host, port=port)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


if not c.agent.service.register(name, service_id=name + "-py-1", address="127.0.0.1", port=31001,
                                tags=["py", "v1"], check=consul.Check.ttl("30s")):
    fail("register with a TTL check")
index, nodes = c.health.service(name)
if len(nodes) != 1 or nodes[0]["Service"]["ID"] != name + "-py-1":
    fail("health after register: %r" % (nodes,))
if sorted(nodes[0]["Service"]["Tags"]) != ["py", "v1"]:
    fail("tags: %r" % (nodes[0]["Service"]["Tags"],))
if [ch["Status"] for ch in nodes[0]["Checks"]] != ["critical"]:
    fail("a TTL check starts critical: %r" % (nodes[0]["Checks"],))
index, passing = c.health.service(name, passing=True)
if passing:
    fail("passing=True returned a critical instance: %r" % (passing,))
print("registered; its TTL check is critical and passing=True leaves it out")

if not c.agent.service.register(name, service_id=name + "-py-2", address="127.0.0.1", port=31002, tags=["py"]):
    fail("register without a check")
index, passing = c.health.service(name, passing=True)
if [n["Service"]["ID"] for n in passing] != [name + "-py-2"]:
    fail("passing=True: %r" % ([n["Service"]["ID"] for n in passing],))
index, tagged = c.health.service(name, tag="v1")
if [n["Service"]["ID"] for n in tagged] != [name + "-py-1"]:
    fail("tag=v1: %r" % ([n["Service"]["ID"] for n in tagged],))
print("passing and tag filters, index %s" % index)


# A blocking query on that index returns on the next change, not before.
# The pause gives the query time to block first (the stimulus, not a
# synchronisation: if it has not blocked yet, it answers at once with the
# change, which passes too).
def later():
    time.sleep(0.5)
    c.agent.service.register(name, service_id=name + "-py-3", address="127.0.0.1", port=31003)


t = threading.Thread(target=later)
t.start()
start = time.time()
new_index, nodes = c.health.service(name, index=index, wait="30s")
t.join()
if int(new_index) <= int(index) or len(nodes) != 3:
    fail("blocking query: index %s -> %s, %d nodes" % (index, new_index, len(nodes)))
if time.time() - start > 20:
    fail("the blocking query waited for its timeout instead of the change")
print("blocking query woke on the change: index %s -> %s" % (index, new_index))

services = c.agent.services()
if not all(name + "-py-%d" % i in services for i in (1, 2, 3)):
    fail("agent services: %r" % (sorted(services),))
catalog_index, catalog = c.catalog.services()
if sorted(catalog.get(name, [])) != ["py", "v1"]:
    fail("catalog services: %r" % (catalog,))

# GET on a write endpoint: refused, as by Consul >= 1.0.
if c.agent.check.ttl_pass("service:" + name + "-py-1"):
    fail("a GET ttl_pass was accepted")
if c.agent.service.deregister(name + "-py-2"):
    fail("a GET deregister was accepted")
print("OK")
