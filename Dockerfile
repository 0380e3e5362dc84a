# Build billingd and billctl; the runtime image holds only the two binaries.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/billingd ./services/billingd && \
    CGO_ENABLED=0 go build -o /out/billctl ./services/billctl

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/billingd /out/billctl /usr/local/bin/
EXPOSE 8080 4222
ENTRYPOINT ["/usr/local/bin/billingd"]
