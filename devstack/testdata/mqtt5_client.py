#!/usr/bin/env python3
"""Python paho-mqtt as an independent MQTT client for drover's broker tests.

Usage: mqtt5_client.py HOST PORT SCENARIO. Prints one JSON object with what
the client saw; the Go test (devstack/mqttprotocol_test.go) asserts on it,
for the embedded broker and for a real mosquitto alike.

Scenarios:
  properties   MQTT 5: CONNACK properties; SUBSCRIBE and UNSUBSCRIBE with a user
               property (SUBACK/UNSUBACK reason codes and properties); PUBLISH at
               QoS 1 and 2 with user properties, content type, message expiry,
               response topic and correlation data, to a topic the client itself
               subscribed to (completion and the properties delivered back).
  sys5, sys311 a QoS 1 and a QoS 2 PUBLISH to $SYS/... (MQTT 5, MQTT 3.1.1): the
               broker must answer (refuse or acknowledge), not leave it waiting.
  alias        MQTT 5: a PUBLISH with a topic alias above the Topic Alias Maximum
               the broker announced: the broker must disconnect with 0x94.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 10


def new_client(client_id, protocol):
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id, protocol=protocol)
    return mqtt.Client(client_id=client_id, protocol=protocol)


def props_dict(p):
    if p is None:
        return {}
    out = {}
    for name in ("UserProperty", "ContentType", "ResponseTopic", "CorrelationData",
                 "MessageExpiryInterval", "TopicAliasMaximum", "ReceiveMaximum",
                 "MaximumQoS", "RetainAvailable", "ReasonString", "AssignedClientIdentifier"):
        if hasattr(p, name):
            v = getattr(p, name)
            if isinstance(v, bytes):
                v = v.decode()
            if isinstance(v, list):
                v = [list(x) for x in v]
            out[name] = v
    return out


class Session:
    """A connected client whose callbacks land in events."""

    def __init__(self, host, port, client_id, protocol=mqtt.MQTTv5):
        self.c = new_client(client_id, protocol)
        self.protocol = protocol
        self.events = {}
        self.cond = threading.Condition()
        self.messages = []
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_message = self._on_message
        self.c.on_disconnect = self._on_disconnect
        self.c.on_publish = self._on_publish
        self.c.connect(host, port, keepalive=30, clean_start=True) if protocol == mqtt.MQTTv5 \
            else self.c.connect(host, port, keepalive=30)
        self.c.loop_start()
        self.wait("connect")

    def _set(self, key, value):
        with self.cond:
            self.events[key] = value
            self.cond.notify_all()

    def _on_connect(self, c, u, flags, rc, properties=None):
        self._set("connect", {"rc": int(getattr(rc, "value", rc)), "properties": props_dict(properties)})

    def _on_subscribe(self, c, u, mid, granted, properties=None):
        codes = [int(getattr(g, "value", g)) for g in granted]
        self._set(("suback", mid), {"codes": codes, "properties": props_dict(properties)})

    def _on_unsubscribe(self, c, u, mid, properties=None, reasons=None):
        if isinstance(reasons, list):
            codes = [int(getattr(r, "value", r)) for r in reasons]
        elif reasons is not None:
            codes = [int(getattr(reasons, "value", reasons))]
        else:
            codes = []
        self._set(("unsuback", mid), {"codes": codes, "properties": props_dict(properties)})

    def _on_publish(self, c, u, mid):
        self._set(("published", mid), True)

    def _on_message(self, c, u, msg):
        with self.cond:
            self.messages.append({"topic": msg.topic, "qos": msg.qos, "payload": msg.payload.decode(),
                                  "properties": props_dict(getattr(msg, "properties", None))})
            self.cond.notify_all()

    def _on_disconnect(self, c, u, rc, properties=None):
        self._set("disconnect", int(getattr(rc, "value", rc)))

    def wait(self, key, timeout=TIMEOUT):
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.events, timeout):
                return None
            return self.events[key]

    def wait_messages(self, n, timeout=TIMEOUT):
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def user_props(pairs):
    p = Properties(PacketTypes.SUBSCRIBE)
    p.UserProperty = pairs
    return p


def publish_props():
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = [("source", "paho-python"), ("k", "v")]
    p.ContentType = "application/json"
    p.MessageExpiryInterval = 3600
    p.ResponseTopic = "replies/python"
    p.CorrelationData = b"corr-42"
    return p


def scenario_properties(host, port):
    s = Session(host, port, "py-props")
    out = {"connack": s.wait("connect")}
    _, mid = s.c.subscribe([("py/props/+", 2), ("py/other", 1)], properties=user_props([("sub", "1")]))
    out["suback"] = s.wait(("suback", mid))
    for qos in (1, 2):
        info = s.c.publish("py/props/q%d" % qos, '{"qos": %d}' % qos, qos=qos, properties=publish_props())
        out["qos%d" % qos] = {"published": s.wait(("published", info.mid)) is True}
    out["received"] = s.wait_messages(2)
    p = Properties(PacketTypes.UNSUBSCRIBE)
    p.UserProperty = [("unsub", "1")]
    _, mid = s.c.unsubscribe(["py/other", "py/never-subscribed"], properties=p)
    out["unsuback"] = s.wait(("unsuback", mid))
    out["alive"] = s.c.is_connected() and "disconnect" not in s.events
    s.close()
    return out


def scenario_sys(host, port, protocol):
    out = {}
    for qos in (1, 2):
        s = Session(host, port, "py-sys-%d" % qos, protocol)
        info = s.c.publish("$SYS/drover/test", "x", qos=qos)
        answered = s.wait(("published", info.mid)) is True
        time.sleep(0.3)
        out["qos%d" % qos] = {"answered": answered, "alive": s.c.is_connected() and "disconnect" not in s.events}
        s.close()
    return out


def scenario_alias(host, port):
    s = Session(host, port, "py-alias")
    maximum = s.events["connect"]["properties"].get("TopicAliasMaximum", 0)
    p = Properties(PacketTypes.PUBLISH)
    p.TopicAlias = maximum + 1
    s.c.publish("py/alias", "x", qos=1, properties=p)
    out = {"topic_alias_maximum": maximum, "disconnect": s.wait("disconnect")}
    s.c.loop_stop()
    return out


def main():
    host, port, scenario = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if scenario == "properties":
        out = scenario_properties(host, port)
    elif scenario == "sys5":
        out = scenario_sys(host, port, mqtt.MQTTv5)
    elif scenario == "sys311":
        out = scenario_sys(host, port, mqtt.MQTTv311)
    elif scenario == "alias":
        out = scenario_alias(host, port)
    else:
        sys.exit("unknown scenario " + scenario)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
