# The device: boot, factory-reset button, then setup mode or home-network mode.
#
# Modes are imported lazily so a device in setup mode never loads the MQTT code
# and a running device never loads the HTTP server (RAM is the scarce resource).
import asyncio
import gc
import json
import sys
import time

import board
import devconfig
import factory
from util import exists, log


class Device:
    def __init__(self, hw):
        self.board = hw
        self.timing = dict(factory.TIMING)
        self.timing.update(hw.timing())
        self.chip_id = hw.chip_id()
        self.ap_ssid = factory.AP_SSID_PREFIX + self.chip_id[-6:]
        self.store = devconfig.Store(hw.flash_dir)
        self.cfg = {}
        self.trial = False  # running a firmware set on trial (OTA), not yet committed

    def reboot(self):
        log("rebooting")
        self.board.reset()

    def reboot_soon(self):
        # Called once the HTTP response is out: give the TCP stack time to deliver it.
        async def later():
            await asyncio.sleep_ms(self.timing["restart_delay_ms"])
            self.reboot()

        asyncio.create_task(later())

    async def check_button(self):
        # GPIO0 held at reset puts an ESP32 into its ROM bootloader, so the button
        # is pressed just after power-on: any press within the window, held for
        # button_hold_s, erases the config. The LED blinks fast meanwhile.
        t, hw = self.timing, self.board
        window = time.ticks_add(time.ticks_ms(), t["button_window_ms"])
        while not hw.button_held():
            if time.ticks_diff(window, time.ticks_ms()) <= 0:
                return
            await asyncio.sleep_ms(50)
        log("BOOT button held: keep holding", t["button_hold_s"], "s to erase the config")
        start = time.ticks_ms()
        on = False
        while hw.button_held():
            on = not on
            hw.led(on)
            if time.ticks_diff(time.ticks_ms(), start) >= t["button_hold_s"] * 1000:
                self.store.erase()
                log("factory reset: config erased")
                hw.led(True)
                await asyncio.sleep_ms(1000)
                break
            await asyncio.sleep_ms(100)
        hw.led(False)

    async def run(self):
        log("boot:", factory.MODEL, factory.FIRMWARE, "chip", self.chip_id, "on", sys.platform)
        await self.check_button()
        # main.py's fwboot left /fw/trial in place: this boot runs a set on trial
        self.trial = exists(self.board.flash_dir.rstrip("/") + "/fw/trial")
        if self.trial:
            log("boot: firmware", factory.FIRMWARE, "on trial")
            import otaboot

            asyncio.create_task(otaboot.deadline(self))
        self.cfg = self.store.load()
        last = self._fallback_note()
        if last is None and devconfig.configured(self.cfg):
            last = await self._home()
            # Falling back to setup mode. Reboot into it so the HTTP server starts on
            # a clean, unfragmented heap; RTC memory carries the reason across.
            if self.board.rtc_write(json.dumps(last).encode()):
                self.reboot()
            for name in ("homemode", "mqttc"):  # no RTC memory: free what we can
                sys.modules.pop(name, None)
            gc.collect()
        # The buffer for POST bodies (up to 6 KB for /api/mqtt with a CA), taken before
        # setup mode's imports and first requests leave the heap in pieces (see pem.py
        # and httpd.Server).
        try:
            reserve = bytearray(factory.MQTT_BODY_MAX)
        except MemoryError:
            reserve = None  # httpd then tries again, and refuses large bodies if it must
        import net

        net.keep_spare()  # and the block a TLS broker check's SSLContext needs
        import setupmode

        mode = setupmode.SetupMode(self, last, reserve)
        reserve = None  # httpd holds it now
        await mode.run()

    async def _home(self):
        # A function of its own so no reference to the module outlives it.
        import homemode

        return await homemode.HomeMode(self).run()

    def _fallback_note(self):
        # Written just before a fallback reboot; read (and cleared) once.
        note = self.board.rtc_read()
        if not note:
            return None
        self.board.rtc_write(b"")
        try:
            last = json.loads(note)
        except ValueError:
            return None
        if not isinstance(last, dict):
            return None
        log("boot: back in setup mode after the home network failed:", last.get("wifi"))
        return last



def main():
    # Everything inside the try, the board and Device construction too: whatever
    # goes wrong ends in a reset, never in a dead REPL without the setup AP.
    hw = None
    delay = factory.TIMING["restart_delay_ms"]
    try:
        hw = board.Board()
        hw.seed_random()
        dev = Device(hw)
        delay = dev.timing["restart_delay_ms"]
        asyncio.run(dev.run())
    except KeyboardInterrupt:
        raise  # a developer at the REPL wants the prompt, not a reboot
    except Exception as e:
        if hw is None:
            raise  # no board to reset with: main.py reports it and resets the chip
        # Never stranded: whatever went wrong, come back up in a known state.
        try:
            log("fatal:", repr(e))
            sys.print_exception(e)
        except Exception:
            pass
        time.sleep_ms(delay)
        hw.reset()
