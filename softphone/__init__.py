"""The I/O edge and the running agent: SIP through pyVoIP (softphone.sip only), RTP media, the agent, the CLI."""
