"""Circuit discovery on the computation graph EAP-IG and the MIB benchmark use (Qt-free).

- :mod:`.graph`: the graph (senders, receivers, edges, names), choosing and
  pruning circuits, faithfulness curves with CPR/CMD (numpy only);
- :mod:`.scoring`: edge scores (``eap``, ``eap_ig``, ``exact``) and exact
  circuit evaluation on a processed TransformerBridge (imports torch);
- :mod:`.files`: EAP-IG's graph JSON and an edges CSV, written atomically and
  read with one-sentence errors.
"""
