# The operator image: a slim Python base, the package installed without dev extras, non-root.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# With the API extra, the same image serves `byok-operator api` (the chart's optional component).
RUN pip install --no-cache-dir --prefix=/install ".[api]"

FROM python:3.11-slim
COPY --from=build /install /usr/local
USER 65532:65532
ENTRYPOINT ["byok-operator"]
CMD ["run"]
