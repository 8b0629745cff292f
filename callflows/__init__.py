"""The house rules as pure logic: call state machine, scripts, answer policy, line detector.

Nothing here touches a socket, a thread, a file or the clock: time comes in with each event.
"""
