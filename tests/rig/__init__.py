"""The test rig: start and stop real SIP peers on loopback for the integration tests and the bench.

Modules (each small, about one peer or one job):

* ``ports``     free loopback addresses and UDP ports (distinct 127.0.0.x per component)
* ``procs``     a child process started in its own session and stopped by its own PID
* ``kamailio``  Kamailio as registrar + record-routing stateful proxy (generated config)
* ``sipp``      SIPp scenarios (``scenarios/*.xml``) as caller or simple UAS, parsed results
* ``sipclient`` a raw UDP SIP peer with message builders and a minimal parser
* ``media``     WAV/RTP pcap building, test-side G.711, audio measurements
* ``baresip``   baresip 1.0 headless as an independent second client
* ``stock``     runs ``bench/stock_agent.py`` (stock pyVoIP 1.6.8) as a peer
* ``fixtures``  pytest fixtures built from the above
* ``postgres``  throw-away PostgreSQL clusters (maintained separately)
* ``scenarios/`` the SIPp XML scenarios (see ``scenarios/README.md``)

Nothing here imports the product (softphone, callflows, recordings, db).
"""
