"""A real RTSP server for camera tests: GStreamer's gst-rtsp-server (Debian's
gir1.2-gst-rtsp-server-1.0) serving a live 320x240 10 fps MJPEG test pattern on
rtsp://127.0.0.1:PORT/test. Prints "ready" once it listens. Run with /usr/bin/python3."""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
# rtpjpegpay needs I420 JPEGs ("Invalid component" otherwise).
factory.set_launch(
    "( videotestsrc is-live=true pattern=ball"
    " ! video/x-raw,format=I420,width=320,height=240,framerate=10/1"
    " ! jpegenc ! rtpjpegpay name=pay0 pt=26 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/test", factory)
if server.attach(None) == 0:
    sys.exit("rtsp_server: cannot listen on 127.0.0.1:" + sys.argv[1])
print("ready", flush=True)
GLib.MainLoop().run()
