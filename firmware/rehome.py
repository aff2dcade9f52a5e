# set_broker (docs/FLEET.md): try another broker. Loaded only for the command, as ota
# is: HomeMode.run tries the new broker (HomeMode.trying) and stores it only once it
# has answered CONNACK; otherwise it goes back to the old one, which hears why.
import asyncio

import validate
from util import log


def start(mode, doc):
    cmd = "set_broker"
    m = mode.m
    body = dict(doc)
    body["topic_prefix"], body["node_name"] = m["topic_prefix"], m["node_name"]
    detail = new = None
    if doc.get("tls") is not None or doc.get("ca") is not None:
        detail = "tls is not taken by set_broker: re-provision for a TLS broker"
    elif mode.updating or mode.leaving or mode.trying:
        detail = "an update, a reboot or a broker change is already under way"
    else:
        try:
            new = validate.mqtt(body)
        except validate.Invalid as e:
            detail = e.detail
    if detail:
        mode._reply({"cmd": cmd, "ok": False, "error": "bad_value", "detail": detail})
        return
    mode.trying = new
    mode._reply({"cmd": cmd, "ok": True})
    asyncio.create_task(_leave(mode, mode.client))


async def _leave(mode, client):
    await asyncio.sleep_ms(50)  # let the reply go out first
    if client:
        try:
            await client.publish(mode.t_status, "offline", retain=True, qos=1)
        except Exception as e:
            log("mqtt: goodbye not sent:", type(e).__name__, e)
        await client.disconnect()  # the session ends; HomeMode.run tries the new broker
