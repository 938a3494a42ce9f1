"""The command-line interface: one module per command group (``people``, ``cases``, ``serve``,
``rota``, ``audit``, ``config_cmd``), each declaring its commands as data (:mod:`.spec`) with
their handlers, put together by :mod:`.main`; and the configuration check it runs. The top
layer: may import anything in the core."""
