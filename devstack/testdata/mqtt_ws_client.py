"""MQTT over WebSockets with Python's paho-mqtt, an independent client.

usage: mqtt_ws_client.py WS_HOST WS_PORT WS_PATH TCP_HOST TCP_PORT

Subscribes over plain MQTT (TCP), publishes one QoS 1 message over
WebSockets (binary frames, subprotocol mqtt) and a second one from a
WebSocket subscriber's point of view, then prints JSON:
{"puback": bool, "tcp_got": payload, "ws_got": payload}.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt

ws_host, ws_port, ws_path, tcp_host, tcp_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
result = {"puback": False, "tcp_got": None, "ws_got": None}
tcp_got, ws_got, subscribed, ws_subscribed = threading.Event(), threading.Event(), threading.Event(), threading.Event()


def client(cid, transport="tcp"):
    c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311, transport=transport)
    if transport == "websockets":
        c.ws_set_options(path=ws_path)
    return c


sub = client("ws-test-tcp-sub")
sub.on_subscribe = lambda c, u, mid, granted: subscribed.set()


def on_tcp_message(c, u, msg):
    result["tcp_got"] = msg.payload.decode()
    tcp_got.set()


sub.on_message = on_tcp_message
sub.connect(tcp_host, tcp_port, 30)
sub.subscribe("devices/farm/ws-1/sensor", qos=1)
sub.loop_start()
assert subscribed.wait(10), "no SUBACK over TCP"

wsub = client("ws-test-ws-sub", "websockets")
wsub.on_subscribe = lambda c, u, mid, granted: ws_subscribed.set()


def on_ws_message(c, u, msg):
    result["ws_got"] = msg.payload.decode()
    ws_got.set()


wsub.on_message = on_ws_message
wsub.connect(ws_host, ws_port, 30)
wsub.subscribe("devices/farm/ws-2/sensor", qos=1)
wsub.loop_start()
assert ws_subscribed.wait(10), "no SUBACK over WebSockets"

pub = client("ws-test-pub", "websockets")
pub.connect(ws_host, ws_port, 30)
pub.loop_start()
info = pub.publish("devices/farm/ws-1/sensor", '{"metric":"t","value":21.5}', qos=1)
info.wait_for_publish(10)
result["puback"] = info.is_published()
tcp_got.wait(10)

# and the other way round: published over TCP, received over WebSockets
sub.publish("devices/farm/ws-2/sensor", '{"metric":"t","value":7}', qos=1).wait_for_publish(10)
ws_got.wait(10)

for c in (pub, sub, wsub):
    c.disconnect()
    c.loop_stop()
print(json.dumps(result))
