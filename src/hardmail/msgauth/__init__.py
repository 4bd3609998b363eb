"""Message authentication and DNS: SPF, DKIM, DMARC, ARC and the resolver they share."""
